export { LocalRedis as TestRedis } from '@batched-fn/redis/testing';
