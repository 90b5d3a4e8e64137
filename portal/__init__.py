"""The Học bạ số district portal: one package per feature, plus shared plumbing."""
