-- The raw items source as it is, after checking its required columns (macros/sources.sql).
select * from {{ proactive_recs_source('items') }}
