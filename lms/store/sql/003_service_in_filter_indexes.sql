-- LMS schema, version 3: the indexes of the resource, commit and parent-resource filters also
-- hold service_name, after (timestamp, id).
--
-- A page of `parent_resource_id` + `service` (or resource_id / commit + service) reads the
-- filter's index newest first. Before, each entry cost a read of its row just to check the
-- service: when the two filters are independent (a parent resource shared by many services)
-- that was thousands of random reads per page, ~0.5-0.7 s at 5 million rows. Now the service is
-- checked on the index entry itself and a page reads index entries only, then ~100 rows.
-- The order stays (timestamp, id): id is named before service_name so that it keeps its place
-- (InnoDB would otherwise append the primary key after service_name).
-- Each DROP + ADD pair is one ALTER, so no moment exists without the index.

ALTER TABLE service_logs
    DROP KEY ix_service_logs_resource_ts,
    ADD KEY ix_service_logs_resource_ts (resource_id, severity, `timestamp`, id, service_name),
    DROP KEY ix_service_logs_commit_ts,
    ADD KEY ix_service_logs_commit_ts (`commit`, severity, `timestamp`, id, service_name),
    DROP KEY ix_service_logs_parent_ts,
    ADD KEY ix_service_logs_parent_ts (parent_resource_id, severity, `timestamp`, id, service_name);
