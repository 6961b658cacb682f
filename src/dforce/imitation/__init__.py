"""Imitation with memory, one domain over the core (paper §4.4 in simulation): the cued Maze2D
memory task (:mod:`.maze`), its expert demos (:mod:`.demos`) and tokens (:mod:`.tokens`), unknown
steps inside a token (:mod:`.masking`), the three policies (:mod:`.policy`), corrupted
observations (:mod:`.corruption`), `dforce eval imitation` (:mod:`.evaluate`, :mod:`.episodes`)
and its corruption matrix (:mod:`.matrix`), with their figures and tables."""
