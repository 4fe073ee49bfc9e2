"""Data sets, the stratified search split and the samplers/loaders of the search."""
