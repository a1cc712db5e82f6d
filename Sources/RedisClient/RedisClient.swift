// Module RedisClient.
