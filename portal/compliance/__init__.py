"""The district compliance board: every school against every deadline of the roll-out plan."""
