-- The key service alone: POST /v1/keys, one new key per request (each a durable transaction).
--   wrk ... -H "authorization: Bearer <admin secret>" -s create.lua
dofile(os.getenv("KG_BENCH_LUA") .. "/report.lua")

wrk.method = "POST"
wrk.path = "/v1/keys"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"name":"bench","tenant":"bench","permissions":["orders:read"]}'
