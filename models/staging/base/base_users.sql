-- The raw users source after checking its required columns, with every column the package
-- parses as text (typed and text sources alike) and any other column as it is (macros/sources.sql).
select {{ proactive_recs_source_select('users') }}
from {{ source('proactive_recs', 'users') }}
