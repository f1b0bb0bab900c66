"""Rule tables and profiles as objects: one rule type and one ``fail`` for every table, a
backend's table and profile handed over with its spec (and then known to ``fail``, the
profiles, ``iommu-uapi rules --backend`` and the generated docs), quirks asked of the profile,
and no profile name compared as a string outside the profile table."""

from __future__ import annotations

import ast
import errno
import functools
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import minibackend
import pytest

import iommu_uapi
from iommu_uapi import plugins, profiles, ruletable
from iommu_uapi.cli import main
from iommu_uapi.errors import UAPIError
from iommu_uapi.features import CacheCell
from iommu_uapi.hookspecs import hookimpl
from iommu_uapi.iommu import IOMMU
from iommu_uapi.model_rules import MODEL_TABLE
from iommu_uapi.plugins import BackendSpec
from iommu_uapi.profiles import Profile
from iommu_uapi.rules import UAPI_TABLE
from iommu_uapi.ruletable import ModelRule, Quirk, Rule, RuleTable
from iommu_uapi.testing.rule_scan import raised_rules
from iommu_uapi.uapi import CacheInvalidateInfo, InvGranu, InvPasidInfo
from iommu_uapi.uapi.consts import CacheType, InvGranularity

ROOT = Path(__file__).resolve().parents[1]

TOY_TABLE = RuleTable("toy", [
    Rule("toy.cell", "cache_invalidate", errno.EBUSY,
         "a cell the toy unit has no command for", "{cell} has no toy command",
         profiles=("toy-spec",), source="toy spec 5.2", section="invalidation"),
    Rule("toy.ring_full", "toy", errno.ENOSPC, "the toy command ring is full",
         "{free} free slots, {need} needed", section="the hardware model"),
], title="Toy backend rules", quirks=[
    Quirk("toy.lazy_sync", "completions are reported before the ring drains",
          ("linux-5.10",), source="toy spec 7"),
    Quirk("toy.queue_depth", "how many commands the ring holds", default=8),
])
#: The one invalidation the toy unit executes.
TOY_CELLS = frozenset({CacheCell(CacheType.IOTLB, InvGranularity.PASID)})
TOY_SPEC = Profile("toy-spec", "what the toy specification says", base="strict",
                   quirks={"toy.queue_depth": 32})


class ToyPlugin:
    """A backend plugin handing its rule table and a profile over with its spec."""

    def __init__(self, name: str = "toy", table: RuleTable = TOY_TABLE,
                 profile: Profile = TOY_SPEC) -> None:
        self.name, self.table, self.profile = name, table, profile

    @hookimpl
    def iommu_register_backends(self, register: object) -> None:
        register(BackendSpec(  # type: ignore[operator]
            name=self.name, factory=functools.partial(minibackend.MiniBackend, cells=TOY_CELLS),
            description="a toy unit", rules=self.table, profiles=(self.profile,)))


@pytest.fixture
def toy() -> Iterator[BackendSpec]:
    plugins.register_plugin("toy", ToyPlugin())
    try:
        yield plugins.get_backend("toy")
    finally:
        plugins.unregister_plugin("toy")
        profiles.unregister("toy-spec")
        ruletable.unregister_table("toy")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- one rule type, one fail ------------------------------------------------------------------


def test_fail_raises_any_registered_tables_rule_with_its_errno_and_id() -> None:
    err = ruletable.fail("cache_invalidate.version", version=3)
    assert (err.errno, err.rule, err.message) == (
        errno.EINVAL, "cache_invalidate.version", "cache_invalidate: version must be 1, got 3")
    err = ruletable.fail("pasid.quota")  # a model rule: its text is the message
    assert (err.errno, err.rule) == (errno.EDQUOT, "pasid.quota")
    assert err.message == "pasid: the PASID set reached its quota"
    assert ruletable.fail("bind.version", "unbind", version=0).message.startswith("unbind: ")
    assert isinstance(UAPI_TABLE["bind.flags"], Rule) and isinstance(MODEL_TABLE["pasid.range"],
                                                                      Rule)
    with pytest.raises(KeyError, match=r"nosuch\.rule"):
        ruletable.fail("nosuch.rule")
    with pytest.raises(TypeError):  # the injector chooses this rule's errno
        ruletable.fail("injected")


def test_the_core_tables_are_registered_first_and_ids_are_unique_across_them() -> None:
    names = [t.name for t in ruletable.tables()]
    assert names[:2] == ["uapi", "model"]
    ids = [r.id for t in ruletable.tables() for r in t.rules]
    assert len(ids) == len(set(ids))


def test_a_table_is_registered_once_and_a_clash_registers_nothing() -> None:
    table = RuleTable("clash", [Rule("clash.own", "x", errno.EINVAL, "own"),
                                Rule("bind.version", "bind", errno.EINVAL, "stolen id")],
                      title="clash")
    with pytest.raises(UAPIError) as exc:
        ruletable.register_table(table)
    assert (exc.value.errno, exc.value.rule) == (errno.EEXIST, "rules.exists")
    assert "uapi" in exc.value.message and ruletable.get_table("clash") is None
    with pytest.raises(KeyError):
        ruletable.lookup("clash.own")
    same = RuleTable("uapi", UAPI_TABLE.rules, quirks=UAPI_TABLE.quirks, title="again")
    assert ruletable.register_table(same) is UAPI_TABLE
    with pytest.raises(ValueError, match="duplicate"):
        RuleTable("dup", [Rule("d.x", "d", 1, "a"), Rule("d.x", "d", 1, "b")], title="dup")


# ---- profiles as objects ----------------------------------------------------------------------


def test_profiles_carry_the_quirks_the_tables_name_them_in() -> None:
    linux, strict = profiles.get("linux-5.10"), profiles.get("strict")
    for quirk in UAPI_TABLE.quirks:
        assert linux.quirk(quirk.id) is True and strict.quirk(quirk.id) is False
    assert linux.applies("bind.version") and not linux.applies("bind.format_nonzero")
    assert strict.applies("bind.format_nonzero") and strict.applies("pasid.range")
    with pytest.raises(KeyError):
        strict.quirk("no.such_quirk")


def test_a_profile_based_on_another_takes_its_rules_and_quirks_and_sets_its_own() -> None:
    lax = Profile("test-5.10-lax", "5.10 without the version rule", base="linux-5.10",
                  quirks={"vfio.bind_unwind_group": False})
    with pytest.raises(UAPIError) as exc:
        profiles.register(Profile("test-orphan", "", base="linux-9"))
    assert exc.value.rule == "profile.unknown" and "test-orphan" not in profiles.names()
    got = profiles.register(lax)
    try:
        assert got.rules == profiles.get("linux-5.10").rules
        assert got.quirk("page_response.drop_on_driver_error") is True
        assert got.quirk("vfio.bind_unwind_group") is False
        assert profiles.get("test-5.10-lax") is got and profiles.definition(got.name) is lax
    finally:
        profiles.unregister("test-5.10-lax")
    with pytest.raises(UAPIError):
        profiles.get("test-5.10-lax")


# ---- a backend's table and profile, handed over with its spec ---------------------------------


def test_a_backends_table_and_profile_come_with_its_spec(toy: BackendSpec) -> None:
    assert toy.rules is TOY_TABLE and ruletable.get_table("toy") is TOY_TABLE
    err = ruletable.fail("toy.cell", cell="IOTLB x DOMAIN")
    assert (err.errno, err.rule, err.message) == (
        errno.EBUSY, "toy.cell", "cache_invalidate: IOTLB x DOMAIN has no toy command")
    spec = profiles.get("toy-spec")
    strict, linux = profiles.get("strict"), profiles.get("linux-5.10")
    assert spec.rules >= strict.rules | {"toy.cell"} and "toy.cell" not in strict.rules
    assert spec.applies("toy.ring_full") and linux.applies("toy.ring_full")
    assert spec.quirk("toy.queue_depth") == 32 and linux.quirk("toy.queue_depth") == 8
    assert linux.quirk("toy.lazy_sync") is True and spec.quirk("toy.lazy_sync") is False
    plugins.registry(refresh=True)  # rebuilding registers the same table and profile again
    assert plugins.get_backend("toy").rules is TOY_TABLE and not plugins.registry().problems


def test_a_backend_profile_drives_the_backend_through_the_facade(toy: BackendSpec) -> None:
    """``toy-spec`` is based on ``strict``, so it applies the test backend's
    ``mini.cache_invalidate.cell`` rule (a rule of a table naming ``strict``)."""
    iommu = IOMMU("toy", profile="toy-spec")
    dom = iommu.domain_alloc(nesting=True)
    dev = iommu.add_device(0x10, ats=True)
    iommu.attach_device(dom, dev)
    info = CacheInvalidateInfo(argsz=32, version=1, cache=2, granularity=1, granu=InvGranu(
        pasid_info=InvPasidInfo(pasid=5, flags=1)))  # DEV_IOTLB x PASID: not a toy cell
    iommu.cache_invalidate(dom, dev, info, profile="linux-5.10")  # skipped, as 5.10 does
    with pytest.raises(UAPIError) as exc:
        iommu.cache_invalidate(dom, dev, info)
    assert (exc.value.errno, exc.value.rule) == (errno.EINVAL, "mini.cache_invalidate.cell")


def test_a_clashing_backend_table_is_a_load_problem(caplog: pytest.LogCaptureFixture) -> None:
    thief = RuleTable("thief", [Rule("bind.version", "bind", errno.EINVAL, "stolen")],
                      title="thief")
    plugins.register_plugin("thief", ToyPlugin("thief", thief, Profile("thief-spec", "")))
    try:
        with caplog.at_level(logging.WARNING):
            reg = plugins.registry()
        assert "thief" not in reg.backends
        assert any("rules.exists" in p.error or "clashes" in p.error for p in reg.problems)
        assert ruletable.get_table("thief") is None and "thief-spec" not in profiles.names()
    finally:
        plugins.unregister_plugin("thief")


def test_rules_command_prints_the_core_and_the_backends_tables(
        toy: BackendSpec, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "rules", "--backend", "toy")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line and line[0] != "#"}
    assert lines["toy.cell"].split()[1:3] == ["EBUSY", "toy-spec"]
    assert "bind.version" in lines and "pasid.range" in lines
    assert lines["toy.lazy_sync"].split()[1:3] == ["quirk", "linux-5.10"]
    rules = len(profiles.get("toy-spec").rules)
    assert f"toy-spec (based on strict): {rules} rules; quirks: toy.queue_depth=32" in out
    assert "strict: " in out and "toy.lazy_sync" in lines["linux-5.10:"]
    code, out, _ = run(capsys, "rules", "--backend", "toy", "--json")
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows["toy.cell"] == {
        "table": "toy", "id": "toy.cell", "operation": "cache_invalidate",
        "errno": "EBUSY", "profiles": ["toy-spec"], "section": "invalidation",
        "text": "a cell the toy unit has no command for", "source": "toy spec 5.2"}
    assert rows["bind.version"]["table"] == "uapi" and rows["pasid.range"]["profiles"] is None
    code, out, _ = run(capsys, "rules")
    assert "toy.cell" not in out and "bind.version" in out


def test_rules_markdown_is_generated_from_the_tables(toy: BackendSpec,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "rules", "--backend", "toy", "--markdown")
    assert code == 0 and "## Toy backend rules" in out
    assert ("| `toy.cell` | invalidation | EBUSY | toy-spec | a cell the toy unit has no "
            "command for | toy spec 5.2 |") in out
    assert "| `toy.queue_depth` | - | 8 | how many commands the ring holds |  |" in out
    assert "| `toy-spec` | strict | `toy.queue_depth` = 32 |" in out
    assert "| `linux-5.10` | - | `page_response.drop_on_driver_error`" in out
    assert out.index("## UAPI checks") < out.index("## Profiles") < out.index("## Toy")


def test_rules_command_refuses_an_unknown_backend_as_a_usage_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "rules", "--backend", "nosuch")
    assert code == 2 and "unknown backend 'nosuch'" in err


def test_rule_scan_reads_fail_calls_with_the_registered_errno(toy: BackendSpec,
                                                               tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(
        "import errno, pytest\n"
        "def f(t):\n"
        "    raise fail('toy.cell', cell='x')\n"
        "def g(t):\n"
        "    raise t.fail('toy.ring_full', free=0, need=1)\n"
        "def h():\n"
        "    raise fail('toy.nosuch')\n"
        "def i():\n"
        "    raise UAPIError(errno.EPERM, 'no', rule='toy.direct')\n"
        "def j():\n"
        "    pytest.fail('not a rule')\n", encoding="utf-8")
    assert raised_rules(tmp_path / "pkg") == {
        "toy.cell": {errno.EBUSY}, "toy.ring_full": {errno.ENOSPC}, "toy.nosuch": {None},
        "toy.direct": {errno.EPERM}}


# ---- no profile name compared outside the profile table ---------------------------------------

PROFILE_NAMES = frozenset({"linux-5.10", "strict", "qemu", "spec"})


def _names_bound_to_profile_names(tree: ast.Module) -> set[str]:
    """Module-level names assigned a profile name (``_STRICT = "strict"``,
    ``SPEC: Final = "spec"``)."""
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(
                node.value, ast.Constant) and node.value.value in PROFILE_NAMES:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found |= {t.id for t in targets if isinstance(t, ast.Name)}
    return found


def _is_profile_name(node: ast.AST, aliases: set[str]) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in PROFILE_NAMES
    if isinstance(node, ast.Name | ast.Attribute):
        name = node.id if isinstance(node, ast.Name) else node.attr
        return name in aliases or name in {"LINUX_5_10", "STRICT"}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_is_profile_name(e, aliases) for e in node.elts)
    return False


def profile_name_comparisons(source: str, aliases: frozenset[str] = frozenset()) -> list[int]:
    """Lines that compare something with a profile name (``==``, ``in``, ``match``), key a
    dict by one, or spell one in a ``Literal`` type; ``aliases`` are names other modules bind
    to a profile name (and this one may import)."""
    tree = ast.parse(source)
    aliases = aliases | _names_bound_to_profile_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            named = [node.left, *node.comparators]
        elif isinstance(node, ast.MatchValue):
            named = [node.value]
        elif isinstance(node, ast.Dict):
            named = [k for k in node.keys if k is not None]
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                and node.value.id == "Literal":
            named = [node.slice]
        else:
            continue
        if any(_is_profile_name(n, aliases) for n in named):
            found.append(node.lineno)
    return sorted(found)


def test_the_scan_finds_every_form_of_comparison() -> None:
    source = '''
_S: Final = "strict"
if profile == "strict": pass
if p != _S: pass
if p in ("linux-5.10", "x"): pass
MODES = {"strict": 1}
Mode = Literal["linux-5.10", "strict"]
match p:
    case "qemu": pass
if p is profiles.STRICT: pass
ok = profiles.get(p).quirk("vtd.prq.addr_page_number")
caps = Capabilities(profiles=("linux-5.10", "strict"))
def f(profile: str = "linux-5.10") -> None: ...
'''
    assert profile_name_comparisons(source) == [3, 4, 5, 6, 7, 9, 10]
    assert profile_name_comparisons("if p == QEMU: pass\n", frozenset({"QEMU"})) == [1]


def _sources() -> list[Path]:
    core = Path(iommu_uapi.__file__).parent
    paths = [*core.rglob("*.py"), *(ROOT / "plugins").glob("*/iommu_uapi_*/**/*.py"),
             *(ROOT / "docs" / "examples").rglob("*.py"), ROOT / "tests" / "minibackend.py"]
    return [p for p in paths if p.name != "profiles.py"]  # the profile tables


#: Modules where the word is not a validation profile's name, and what it is there.
NOT_PROFILES = {
    "trace/workloads.py": "the DMA API's unmap mode (Linux's iommu.strict), not a profile",
}


#: Modules that still compare profile names, to be moved onto their table's rules and quirks;
#: the test fails once one no longer does, so the list only shrinks.
STILL_COMPARING: frozenset[str] = frozenset()


def test_no_code_outside_the_profile_table_compares_profile_names() -> None:
    sources = [p for p in _sources()
               if not any(p.as_posix().endswith(m) for m in NOT_PROFILES)]
    assert any(p.name == "prq_glue.py" for p in sources) or not (ROOT / "plugins").is_dir()
    texts = {p: p.read_text(encoding="utf-8") for p in sources}
    aliases = frozenset().union(*(_names_bound_to_profile_names(ast.parse(t))
                                  for t in texts.values()))
    found = {f"{p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}:{line}"
             for p, text in texts.items()
             for line in profile_name_comparisons(text, aliases)}
    offenders = sorted(f for f in found if f.split(":")[0] not in STILL_COMPARING)
    assert offenders == []
    present = {m for m in STILL_COMPARING if (ROOT / m).exists()}
    assert {f.split(":")[0] for f in found} == present, "a listed module was converted"


def test_a_profile_listing_a_tables_rules_decides_that_table_alone(toy: BackendSpec) -> None:
    """Made from ``strict`` minus one core rule, a profile stays without it (the core table
    names ``strict``, not this profile) and still takes the toy table's rules of its base."""
    strict = profiles.get("strict")
    core_only = frozenset(r for r in strict.rules if r in UAPI_TABLE)
    made = profiles.get(Profile("test-strict-1", "", core_only - {"bind.padding"},
                                base="toy-spec"))
    assert "bind.padding" not in made.rules and "bind.flags" in made.rules
    assert "toy.cell" in made.rules and made.quirk("toy.queue_depth") == 32


def test_a_table_takes_rules_written_in_the_earlier_model_rule_spelling() -> None:
    old = ModelRule("old.ring", errno.ENOSPC, "the hardware model", "the ring is full")
    table = RuleTable("old", [old], title="old")
    assert table["old.ring"] == Rule("old.ring", "old", errno.ENOSPC, "the ring is full",
                                     section="the hardware model")
    assert table.fail("old.ring").message == "old: the ring is full"
