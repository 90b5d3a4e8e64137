"""Year-end results of a class: Điều 9 results confirmed by the GVCN, awards, completion, the principal's
promotion decision, review marks, and the class summary (bảng tổng hợp) of any period."""
