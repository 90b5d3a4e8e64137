"""Rating grids (Thông tư 27): a teacher's classes, the subject and class-assessment grids, Excel in and out."""
