{#
  The partitioned top-K's merge (proactive_recs.warehouse.partitioned_topk): the partial
  lists of every (user bucket, item block) partition cut to the k best per owner, by score
  descending and then the member's position ascending (topk_both's tie rule), so that the
  merged lists are those of one pass over all users and items. `partials` is a relation (or a
  CTE) with direction ('user_item' / 'item_user'), owner_position, member_position and score;
  k_items and k_users are SQL expressions. One select, so that it can sit in a CTE.
#}
{% macro proactive_recs_merge_partitioned_topk(partials, k_items, k_users) -%}
    select
        direction,
        owner_position,
        member_position,
        score,
        rank

    from (
        select
            direction,
            owner_position,
            member_position,
            score,
            row_number() over (
                partition by direction, owner_position
                order by score desc, member_position asc
            ) as rank

        from {{ partials }}
    ) as ranked

    where
        (direction = 'user_item' and rank <= {{ k_items }})
        or (direction = 'item_user' and rank <= {{ k_users }})
{%- endmacro %}
