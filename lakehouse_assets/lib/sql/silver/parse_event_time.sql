-- The macro parse_event_time(text): a landed event_time as a TIMESTAMP in UTC, or NULL. The
-- common ISO form without offset is parsed by a fast strptime; anything else (offsets, dates,
-- spaces) by the general TIMESTAMPTZ cast, in the session's time zone (UTC).
-- The noqa: the linter reads a macro's parameter as a data type.
CREATE OR REPLACE TEMP MACRO parse_event_time(landed) AS coalesce(  -- noqa: CP05
    try_strptime(landed, '%Y-%m-%dT%H:%M:%S'),
    try_cast(trim(landed) AS TIMESTAMPTZ)::TIMESTAMP
)
