"""The bottom of the house: atomic files, plotting, colours and where the configs live. Imports nothing
of flakeseg but :mod:`flakeseg.errors`."""
