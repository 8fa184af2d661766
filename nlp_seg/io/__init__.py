"""Reading inputs and writing outputs: tables in; CSV, Parquet, JSON, audiences and the HTML
report out."""
