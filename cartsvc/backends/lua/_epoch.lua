-- The serving primary's replication id. Entries are stamped with it: one stamped under
-- another id was written under another primary (before a failover, a restart or a slot's
-- migration) and may lack writes acknowledged there, so it is a miss. Redis gives a promoted
-- replica, a restarted server and each Cluster node an id of its own.
local epoch = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
