"""The data model: catalogs of items seen through view slots, query sets with graded relevance,
splits, the view layout and selections, batching of views, stable hashing, and downloads (fetch).
"""
