-- Argo CD health check of a tenancy.platform.dev Tenant, for argocd-cm
-- `resource.customizations.health.tenancy.platform.dev_Tenant` (see docs/gitops.md).
-- Healthy: Ready=True for the current generation. Degraded: Stalled=True or phase Failed.
-- Suspended: phase Suspended. Progressing: everything else, deletion included.
local function condition(type)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function message_of(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    if c.reason ~= nil and c.reason ~= "" then
      return c.reason .. ": " .. c.message
    end
    return c.message
  end
  return fallback
end

local hs = {}
local ready = condition("Ready")
local stalled = condition("Stalled")
local reconciling = condition("Reconciling")

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = message_of(ready, "Terminating")
  return hs
end
if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile the Tenant"
  return hs
end
-- A status written for an older spec says nothing about the current one.
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local phase = obj.status.phase
if phase == "Terminating" then
  hs.status = "Progressing"
  hs.message = message_of(ready, "Terminating")
  return hs
end
if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = message_of(ready, "spec.suspend is true")
  return hs
end
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = message_of(stalled, "Stalled")
  return hs
end
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = message_of(ready, "Failed")
  return hs
end
if is_true(ready) and not is_true(reconciling) then
  hs.status = "Healthy"
  hs.message = message_of(ready, "Ready")
  return hs
end
hs.status = "Progressing"
hs.message = message_of(reconciling, message_of(ready, "Provisioning"))
return hs
