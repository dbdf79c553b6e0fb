"""The only code that knows dbt relations (DuckDB and Snowpark): reading refs into frames or
arrays, reading vars, and writing the library's results back as the Python models' outputs.
"""
