"""Pupils of a school: lists per year and class, the identity page, its review (rà soát) by the GVCN,
and the exchange of pupil lists and results with CSDL ngành as Excel workbooks."""
