-- wrk script: POST the body in $BODY_FILE as JSON.
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local non2xx = summary.errors.status
  if non2xx > 0 then
    io.stderr:write(string.format("non-2xx responses: %d\n", non2xx))
  end
end
