-- Every raw item row, typed, with the reason it is rejected (null = clean).
with

source as (

    select * from {{ ref('base_items') }}

),

typed as (

    select
        {{ clean_text('item_id') }} as item_id,
        {{ clean_text('title') }} as title,
        lower({{ clean_text('category') }}) as category,
        {{ try_cast_numeric('price') }} as price,
        {{ to_utc_timestamp('available_from') }} as available_from,
        {{ to_utc_timestamp('available_until') }} as available_until,
        {{ clean_text('url') }} as url,
        {{ clean_text('image_url') }} as image_url,
        {{ star_exclude(proactive_recs_required_columns()['items']) }},

        {{ clean_text('price') }} as price_raw,
        {{ clean_text('available_from') }} as available_from_raw,
        {{ clean_text('available_until') }} as available_until_raw,
        coalesce({{ clean_text('item_id') }}, '<null>') as raw_key

    from source

),

checked as (

    select
        {{ star_exclude(['price_raw', 'available_from_raw', 'available_until_raw']) }},
        case
            when item_id is null then 'null_id'
            when
                (price_raw is not null and price is null)
                or (available_from_raw is not null and available_from is null)
                or (available_until_raw is not null and available_until is null)
                then 'unparseable_value'
        {% if var('proactive_recs_product_item_id_pattern') -%}
            when not {{ regex_search('item_id', var('proactive_recs_product_item_id_pattern')) }}
                then 'non_product_item'
            {%- endif %}
        end as row_defect

    from typed

),

final as (

    -- the first row of an item_id by available_from is the item; later ones are duplicates
    select
        {{ star_exclude(['row_defect']) }},
        {{ audit_row_columns('items', ['item_id'], 'available_from, title, price, category') }}

    from checked

)

select * from final
