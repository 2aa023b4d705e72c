-- The serving primary's replication id. Entries are stamped with it: one stamped under
-- another id was written under another primary (before a failover, a restart or a slot's
-- migration) and may lack writes acknowledged there, so it is a miss. Redis gives a promoted
-- replica, a restarted server and each Cluster node an id of its own. (A plain find: a
-- pattern match over INFO's text costs Redis twice the time.)
local info = redis.call('INFO', 'replication')
local at = string.find(info, 'master_replid:', 1, true)
local epoch = string.sub(info, at + 14, at + 53)
