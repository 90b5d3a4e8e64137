"""Assessment per Thông tư 27/2020: school years, classes, pupils, ratings, year-end results, review."""
