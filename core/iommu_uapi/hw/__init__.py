"""Hardware machinery every backend shares: bit fields, rings in memory, the PCIe ATS encoding."""
