-- The key service alone: POST /v1/lookup for a random hash from a file of existing key hashes.
--   wrk ... -H "authorization: Bearer <filter token>" -s lookup.lua -- FILE
dofile(os.getenv("KG_BENCH_LUA") .. "/report.lua")

local hashes, headers = {}, {}

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then hashes[#hashes + 1] = line end
  end
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["content-type"] = "application/json"
  math.randomseed(os.time())
end

function request()
  local body = '{"key_hash":"' .. hashes[math.random(#hashes)] .. '"}'
  return wrk.format("POST", "/v1/lookup", headers, body)
end
