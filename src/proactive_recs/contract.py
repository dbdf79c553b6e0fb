"""The source contract (docs/raw_data.md): the columns each raw table must
have, in contract order. The one Python copy: the generator, the Online Retail loader and
the GX checks read it; dbt's copy is the macro ``proactive_recs_required_columns`` in
macros/sources.sql, and a test keeps the two equal."""

from __future__ import annotations

__all__ = ["CHANNELS", "REQUIRED_COLUMNS"]

# The channels the package plans for, as staging names them (macro normalize_channel). dbt's
# copy is the macro proactive_recs_channels in macros/sources.sql; a test keeps them equal.
CHANNELS: tuple[str, ...] = ("email", "push")

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": (
        "user_id",
        "email",
        "joined_at",
        "country",
        "timezone",
        "email_opt_in",
        "unsubscribed_at",
    ),
    "items": (
        "item_id",
        "title",
        "category",
        "price",
        "available_from",
        "available_until",
        "url",
        "image_url",
    ),
    "transactions": ("user_id", "item_id", "occurred_at", "event_type", "quantity", "amount"),
    "notification_sends": ("send_id", "user_id", "campaign_id", "item_id", "channel", "sent_at"),
    "notification_events": ("send_id", "event_type", "occurred_at"),
}
