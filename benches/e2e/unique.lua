-- wrk script: POST the body in $BODY_FILE as JSON, each request with its
-- own Message-IDs, so that a store takes every event as new. The body's
-- Message-IDs all contain the placeholder "06cd-b1ae-9526"; each request
-- replaces it with "<run>-<thread>-<request>" ($RUN tells runs apart).
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
local template = file:read("*a")
file:close()
local run = os.getenv("RUN") or "0"
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function request()
  counter = counter + 1
  local unique = string.format("%s-%d-%d", run, id, counter)
  local body = template:gsub("06cd%-b1ae%-9526", unique)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

done = function(summary, latency, requests)
  local non2xx = summary.errors.status
  if non2xx > 0 then
    io.stderr:write(string.format("non-2xx responses: %d\n", non2xx))
  end
end
