-- Argo CD health check for sked.dev/ScheduledJob. Argo CD runs it with gopher-lua
-- (Lua 5.1) and the live object in the global `obj`.
--
--   Progressing  sked has not yet written a status for the current generation
--   Degraded     condition InvalidSpec or Failing is True
--   Suspended    spec.suspend is true
--   Healthy      otherwise, also while a run is active and for a schedule that
--                never fires (condition Ready with reason NeverFires)
local health = {}
local status = obj.status
local generation = obj.metadata.generation

if status == nil or (generation ~= nil and status.observedGeneration ~= generation) then
  health.status = "Progressing"
  health.message = "Waiting for sked to observe generation " .. tostring(generation)
  return health
end

local ready = nil
for _, condition in ipairs(status.conditions or {}) do
  if condition.status == "True" and (condition.type == "InvalidSpec" or condition.type == "Failing") then
    health.status = "Degraded"
    health.message = condition.type .. ": " .. (condition.message or condition.reason or "")
    return health
  end
  if condition.type == "Ready" then
    ready = condition
  end
end

if obj.spec ~= nil and obj.spec.suspend == true then
  health.status = "Suspended"
  health.message = "The ScheduledJob is suspended"
  return health
end

health.status = "Healthy"
local active = status.activeCount or 0
if active == 1 then
  health.message = "1 run active"
elseif active > 1 then
  health.message = tostring(active) .. " runs active"
elseif ready ~= nil and ready.reason == "NeverFires" then
  health.message = ready.message or "The schedule never fires"
elseif status.nextScheduleTime ~= nil then
  health.message = "Next run at " .. status.nextScheduleTime
else
  health.message = "Waiting for the next run"
end
return health
