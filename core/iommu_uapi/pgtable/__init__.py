"""Page-table formats, io-pgtable style: one module per format, each with a walker and a builder."""
