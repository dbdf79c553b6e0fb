"""Tools around the package, apart from the runtime: the synthetic data generator, the Online
Retail loader, the benchmarks, the closed-loop simulation, the Great Expectations suites, the
report, the summary and the Snowflake stage upload.

Installed by the development set-up (`make setup`) and run from the command line
(`python -m proactive_recs_tools.<tool>`). The runtime package, `proactive_recs`, never imports
them, and only it is zipped for Snowflake (`proactive_recs_tools.snowflake_stage`).
"""
