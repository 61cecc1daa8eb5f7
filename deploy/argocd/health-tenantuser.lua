-- Argo CD health check of a tenancy.platform.dev TenantUser, for argocd-cm
-- `resource.customizations.health.tenancy.platform.dev_TenantUser` (see docs/gitops.md).
-- Healthy: Ready=True for the current generation. Degraded: Stalled=True (a duplicate email
-- or username, say). Progressing: everything else, waiting for its Tenant included.
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
  hs.message = "Terminating"
  return hs
end
if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile the TenantUser"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = message_of(stalled, "Stalled")
  return hs
end
if is_true(ready) and not is_true(reconciling) then
  hs.status = "Healthy"
  hs.message = message_of(ready, "Ready")
  return hs
end
hs.status = "Progressing"
hs.message = message_of(reconciling, message_of(ready, "Waiting for the operator"))
return hs
