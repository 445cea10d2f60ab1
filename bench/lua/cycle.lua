-- Sends each request with the next credential from a file, in order, wrapping around.
--   wrk ... -s cycle.lua -- FILE HEADER OFFSET [PREFIX] [LIMIT]
-- FILE: one credential per line; HEADER: the header to put it in (e.g. x-api-key or
-- authorization); OFFSET: the line to start at (the driver carries it from run to run so a
-- "every request a new credential" row does not replay the lines of its previous run);
-- PREFIX: put before each value (e.g. "Bearer "); LIMIT: stop after this many answers (0: run
-- for the whole duration), to send each credential exactly once.
dofile(os.getenv("KG_BENCH_LUA") .. "/report.lua")

local lines, header, prefix, i, limit, answered = {}, nil, "", 0, 0, 0
local headers = {}

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then lines[#lines + 1] = line end
  end
  header = args[2]
  i = tonumber(args[3] or "0") or 0
  prefix = args[4] or ""
  limit = tonumber(args[5] or "0") or 0
  for name, value in pairs(wrk.headers) do headers[name] = value end
  if limit > 0 then
    response = function()
      answered = answered + 1
      if answered >= limit then wrk.thread:stop() end
    end
  end
end

function request()
  headers[header] = prefix .. lines[(i % #lines) + 1]
  i = i + 1
  return wrk.format(nil, nil, headers)
end
