--[[
qauvern-hpc: refuse forbidden `--qpu` requests at submit time (Slurm job_submit/lua, 22.05 and newer).

Install: copy this file beside slurm.conf as job_submit.lua, set `JobSubmitPlugins=lua` in slurm.conf, and
run `qauvern-hpc render-policy` (it writes qpu_policy.lua beside slurm.conf; run it again after every config
change: the policy file is read again for each --qpu job, so no restart is needed).

What it does
  * A job WITHOUT --qpu is never refused and never touches the policy file.
  * A job with --qpu: the SPANK plugin stored `QPU=a,b` in the job's spank_job_env
    (spank_job_control_setenv). Slurm 22.05 hands spank_job_env to Lua as an array of "NAME=value" strings
    indexed from 0 (so it is walked with pairs(), not ipairs()); the entry is "QPU=a,b" here, and only
    becomes SPANK_QPU in the prolog's environment. "SPANK_QPU=..." is accepted too, in case a future Slurm
    prefixes earlier.
  * The job is mapped exactly like `qauvern-hpc map` does (same first-match rules, same messages; the test
    suite runs one table of cases through both). A refusal returns slurm.ERROR and tells the user why:
        sbatch: error: qpu: rule 'no-students' denies user=bob account=physics partition=cpu qos=student: ...
  * Changing a --qpu job's account, partition or QOS later (scontrol update) is checked the same way. Slurm
    22.05 cannot show a message to the user on modify, so a refusal there returns ESLURM_ACCESS_DENIED
    ("Access/permission denied") and the reason goes to slurmctld's log (`qauvern-hpc map` explains too).

Who the job is (what the rules match on)
  * user:      job_desc.user_name. When Slurm gives none (22.05 leaves job_rec.user_name nil on modify,
               and user_name is nil when the controller cannot resolve the uid), the uid is looked up in
               /etc/passwd, then with `getent passwd UID`; failing that the decimal uid is used ("1234").
  * account:   job_desc.account; if the user gave none, the user's default account from slurmdbd
               (job_desc.default_account). Without accounting there is none: the account is then unknown
               (""), which only `*` or an absent `accounts` key matches. Note: the prolog sees the account
               the job really got, so keep AccountingStorageEnforce=associations for the two to agree.
  * partition: job_desc.partition, else the default partition (flag_default in part_list). A comma list
               (-p a,b) must map the same way in every partition, or the job is refused.
  * qos:       job_desc.qos, else the association's default QOS (job_desc.default_qos), else unknown ("").

If the policy file is missing or broken, the error is logged in slurmctld's log; jobs without --qpu go
through as always, and --qpu jobs follow FAIL_MODE below ("closed": refused with a message; "open": let
through, the prolog decides again). The same holds for any unexpected error in this script.

To combine with an existing job_submit.lua: set `QAUVERN_QPU_LIBRARY_ONLY = true`, dofile() this file, and
call `qauvern_qpu.job_submit(job_desc, part_list, submit_uid)` (and `qauvern_qpu.job_modify(...)`) from
your own functions; return its result when it is not slurm.SUCCESS.
]]

-- Settings: edit here, or set the variables in slurmctld's environment (e.g. a systemd drop-in).
local SETTINGS = {
	-- The rendered policy; default: qpu_policy.lua beside this script (that is, beside slurm.conf).
	policy_file = os.getenv("QAUVERN_HPC_QPU_POLICY"),
	-- --qpu jobs when the policy cannot be read: "closed" refuses them, "open" lets them through.
	fail_mode = os.getenv("QAUVERN_HPC_QPU_FAIL_MODE") or "closed",
	-- Per-instance license prefix (e.g. "qpu_"): every --qpu job let through gets the license
	-- <prefix><instance>:1 for the instance the rules chose (any <prefix>* license the user asked for is
	-- replaced). `qauvern-hpc rebalance` reads it back from squeue (which instance a pending job needs) and
	-- gates an instance whose quantum limit is reached with GrpTRES=license/<prefix><instance>=0, so its
	-- jobs pend with reason AssocGrpLicense. Unset: no license is added. The licenses must be in slurm.conf
	-- (Licenses=qpu_physics:100000,... and AccountingStorageTRES=license/qpu_physics,...), with counts above
	-- any number of QPU jobs that may run at once, or --qpu jobs are refused ("Invalid license").
	-- With `admission.enabled`, the rendered policy also names a pair license qpu_<instance>__<backend> per
	-- resource: each --qpu job gets one per requested resource (the admission controller caps them; run
	-- `qauvern-hpc render-policy --slurm-licenses` for the slurm.conf lines they need).
	instance_license = os.getenv("QAUVERN_HPC_QPU_INSTANCE_LICENSE"),
}

local POLICY_FORMAT = 1
local MATCHERS = "lua-pattern" -- = LUA_MATCHERS in qauvern_hpc/policy/compiled.py
local MAX_RESOURCES = 8
local MAX_NAME_LENGTH = 64
local NO_VAL = 4294967294 -- Slurm's "unset" for uint32 fields
local MATCH_FIELDS = { "users", "accounts", "partitions", "qos", "clusters" }
local IDENTITY_KEY = { users = "user", accounts = "account", partitions = "partition", qos = "qos", clusters = "cluster" }

local M = { settings = SETTINGS }

local function script_dir()
	local source = debug.getinfo(1, "S").source
	if source:sub(1, 1) == "@" then
		local dir = source:sub(2):match("^(.*)/[^/]*$")
		if dir then
			return dir
		end
	end
	return "."
end

local DEFAULT_POLICY_FILE = script_dir() .. "/qpu_policy.lua"

-- Every log call goes through these, so a missing slurm.* function can never break a submission.
local function log(level, fmt, ...)
	local fn = slurm and slurm[level]
	if type(fn) == "function" then
		fn(fmt, ...)
	end
end

local function tell_user(message)
	-- slurm.log_user is a string.format wrapper: never pass user-controlled text as the format.
	log("log_user", "%s", "qpu: " .. message)
end

-- Text helpers -------------------------------------------------------------------------------------------

local function trim(s)
	return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- "--qpu" text -> names: split on commas, strip blanks; "" -> {} (an empty request).
function M.parse_request(text)
	local out = {}
	if text:match("^%s*$") then
		return out
	end
	for item in (text .. ","):gmatch("([^,]*),") do
		out[#out + 1] = trim(item)
	end
	return out
end

local function partitions_of(partition)
	local out = {}
	for item in (partition .. ","):gmatch("([^,]*),") do
		item = trim(item)
		if item ~= "" then
			out[#out + 1] = item
		end
	end
	if #out == 0 then
		out[1] = ""
	end
	return out
end

local function quoted(names)
	local out = {}
	for i, n in ipairs(names) do
		out[i] = "'" .. n .. "'"
	end
	return table.concat(out, ", ")
end

local function joined(names)
	if #names == 0 then
		return "none"
	end
	return table.concat(names, ", ")
end

local function resource_word(n)
	if n == 1 then
		return "QPU resource"
	end
	return "QPU resources"
end

local function dash(v)
	if v == nil or v == "" then
		return "-"
	end
	return v
end

local function describe(identity)
	return "user=" .. dash(identity.user) .. " account=" .. dash(identity.account) .. " partition="
		.. dash(identity.partition) .. " qos=" .. dash(identity.qos)
		.. ((identity.cluster or "") ~= "" and (" cluster=" .. identity.cluster) or "")
end

-- Matchers: `qauvern-hpc render-policy` compiles each glob of the config (the safe fnmatch subset of
-- qauvern_hpc.policy.mapping, validated there) into an anchored Lua pattern; qpu_policy.lua holds, per match
-- list, entries {glob = "phys*", pattern = "^phys.*$"} ({..., exclude = true} for "!glob"). Nothing is compiled
-- or validated here.

-- A value fits a glob list when it matches a plain glob (or the list only excludes) and no "!glob".
function M.list_match(patterns, value)
	if patterns == nil then
		return true
	end
	local has_plain = false
	for _, p in ipairs(patterns) do
		if p.exclude then
			if value:find(p.pattern) then
				return false
			end
		else
			has_plain = true
		end
	end
	if not has_plain then
		return true
	end
	for _, p in ipairs(patterns) do
		if not p.exclude and value:find(p.pattern) then
			return true
		end
	end
	return false
end

local function rule_matches(rule, identity)
	local match = rule.match or {}
	for _, field in ipairs(MATCH_FIELDS) do
		if not M.list_match(match[field], identity[IDENTITY_KEY[field]] or "") then
			return false
		end
	end
	return true
end

-- The decision (mirrors qauvern_hpc.policy.mapping.decide) -------------------------------------------------------

function M.check_request(policy, requested)
	if #requested == 0 then
		return "empty_request", "no QPU resource requested (use --qpu=NAME[,NAME...])"
	end
	if #requested > MAX_RESOURCES then
		return "too_many",
			"too many QPU resources requested (" .. #requested .. ", at most " .. MAX_RESOURCES .. ")"
	end
	for _, name in ipairs(requested) do
		if #name > MAX_NAME_LENGTH or not name:match("^[A-Za-z0-9_.%-]+$") then
			return "bad_name",
				"invalid QPU resource name '" .. name .. "' (letters, digits, '_', '.', '-'; 1 to 64 characters)"
		end
	end
	local seen = {}
	for _, name in ipairs(requested) do
		if seen[name] then
			return "duplicate_resource", "QPU resource '" .. name .. "' requested twice"
		end
		seen[name] = true
	end
	local unknown = {}
	for _, name in ipairs(requested) do
		if not policy.known[name] then
			unknown[#unknown + 1] = name
		end
	end
	if #unknown > 0 then
		return "unknown_resource",
			"unknown " .. resource_word(#unknown) .. " " .. quoted(unknown) .. " (known: " .. joined(
				policy.resources
			) .. ")"
	end
	return nil
end

local function apply(rule, is_default, requested, who)
	if rule.deny then
		local code = is_default and "default_deny" or "deny_rule"
		return { allowed = false, code = code, rule = rule.name, message = "rule '" .. rule.name .. "' denies "
			.. who .. ": " .. tostring(rule.message) }
	end
	local allowed_set = {}
	for _, r in ipairs(rule.resources or {}) do
		allowed_set[r] = true
	end
	local refused = {}
	for _, name in ipairs(requested) do
		if not allowed_set[name] then
			refused[#refused + 1] = name
		end
	end
	if #refused > 0 then
		return {
			allowed = false,
			code = "resource_not_allowed",
			rule = rule.name,
			message = "rule '" .. rule.name .. "' does not allow " .. resource_word(#refused) .. " "
				.. quoted(refused) .. " for " .. who .. " (allowed: " .. joined(rule.resources or {}) .. ")",
		}
	end
	return {
		allowed = true,
		code = "ok",
		rule = rule.name,
		instance = rule.instance,
		message = "rule '" .. rule.name .. "' allows " .. quoted(requested) .. " for " .. who
			.. " on instance '" .. tostring(rule.instance) .. "'",
	}
end

local function decide_one(policy, identity, requested, who)
	for _, rule in ipairs(policy.rules) do
		if rule_matches(rule, identity) then
			return apply(rule, false, requested, who)
		end
	end
	return apply(policy.default, true, requested, who)
end

-- identity: {user=, account=, partition=, qos=, cluster=} (strings; "" = unknown; partition may be "a,b").
-- Returns {allowed=, code=, rule=, instance=, message=}.
function M.decide(policy, identity, requested)
	local code, message = M.check_request(policy, requested)
	if code then
		return { allowed = false, code = code, message = message }
	end
	local who = describe(identity)
	local parts = partitions_of(identity.partition or "")
	local results = {}
	for i, p in ipairs(parts) do
		local one = {
			user = identity.user or "",
			account = identity.account or "",
			partition = p,
			qos = identity.qos or "",
			cluster = identity.cluster or "",
		}
		results[i] = decide_one(policy, one, requested, who)
	end
	local first = results[1]
	local agree = true
	for _, d in ipairs(results) do
		if d.allowed ~= first.allowed or d.code ~= first.code or d.rule ~= first.rule or d.instance ~= first.instance then
			agree = false
		end
	end
	if agree then
		return first
	end
	local summary = {}
	for i, d in ipairs(results) do
		local outcome = d.allowed and ("instance " .. tostring(d.instance)) or "denied"
		summary[i] = dash(parts[i]) .. " -> rule '" .. d.rule .. "' (" .. outcome .. ")"
	end
	return {
		allowed = false,
		code = "partition_mismatch",
		message = "partitions " .. table.concat(parts, ",") .. " map to different QPU decisions: "
			.. table.concat(summary, "; ") .. "; submit to a single partition",
	}
end

-- The policy file ----------------------------------------------------------------------------------------

-- Load the rendered policy (its format only is checked). Returns the policy, or nil and a reason.
function M.load_policy(path)
	path = path or SETTINGS.policy_file or DEFAULT_POLICY_FILE
	local chunk, err
	if setfenv then -- Lua 5.1 / LuaJIT: run the file in an empty environment
		chunk, err = loadfile(path)
		if chunk then
			setfenv(chunk, {})
		end
	else
		chunk, err = loadfile(path, "t", {})
	end
	if not chunk then
		return nil, "cannot load the QPU policy: " .. tostring(err)
	end
	local ok, policy = pcall(chunk)
	if not ok then
		return nil, "the QPU policy " .. path .. " failed: " .. tostring(policy)
	end
	if type(policy) ~= "table" or policy.format ~= POLICY_FORMAT or policy.matchers ~= MATCHERS then
		return nil, "the QPU policy " .. path .. " is not a format " .. POLICY_FORMAT .. " policy with "
			.. MATCHERS .. " matchers (run `qauvern-hpc render-policy`)"
	end
	if type(policy.resources) ~= "table" or type(policy.rules) ~= "table" then
		return nil, "the QPU policy " .. path .. " lacks resources or rules"
	end
	policy.known = {}
	for _, name in ipairs(policy.resources) do
		policy.known[name] = true
	end
	policy.path = path
	return policy
end

-- Slurm glue -----------------------------------------------------------------------------------------------

-- The --qpu text from a spank_job_env table (0-indexed "NAME=value" strings), or nil for a job without it.
function M.qpu_request(spank_job_env)
	if type(spank_job_env) ~= "table" then
		return nil
	end
	local fallback = nil
	for _, entry in pairs(spank_job_env) do
		if type(entry) == "string" then
			local value = entry:match("^QPU=(.*)$")
			if value then
				return value
			end
			value = entry:match("^SPANK_QPU=(.*)$")
			if value then
				fallback = value
			end
		end
	end
	return fallback
end

local function nonempty(v)
	if type(v) == "string" and v ~= "" then
		return v
	end
	return nil
end

-- uid -> user name, for when Slurm does not give the name (rare: costs a read of /etc/passwd, maybe getent).
local function user_for_uid(uid)
	if type(uid) ~= "number" or uid < 0 or uid >= NO_VAL then
		return ""
	end
	local id = string.format("%d", uid)
	local fh = io.open("/etc/passwd", "r")
	if fh then
		for line in fh:lines() do
			local name, u = line:match("^([^:]+):[^:]*:(%d+):")
			if u == id then
				fh:close()
				return name
			end
		end
		fh:close()
	end
	local ok, pipe = pcall(io.popen, "getent passwd " .. id .. " 2>/dev/null")
	if ok and pipe then
		local line = pipe:read("*l")
		pipe:close()
		local name = line and line:match("^([^:]+):")
		if name then
			return name
		end
	end
	return id
end
M.user_for_uid = user_for_uid

local function default_partition(part_list)
	if type(part_list) ~= "table" then
		return nil
	end
	for name, part in pairs(part_list) do
		if type(part) == "table" or type(part) == "userdata" then
			if part.flag_default == 1 then
				return nonempty(part.name) or name
			end
		end
	end
	return nil
end

function M.submit_identity(job_desc, part_list, submit_uid)
	local user = nonempty(job_desc.user_name)
	if not user then
		local uid = job_desc.user_id
		if type(uid) ~= "number" or uid >= NO_VAL then
			uid = submit_uid
		end
		user = user_for_uid(uid)
	end
	return {
		user = user,
		account = nonempty(job_desc.account) or nonempty(job_desc.default_account) or "",
		partition = nonempty(job_desc.partition) or default_partition(part_list) or "",
		qos = nonempty(job_desc.qos) or nonempty(job_desc.default_qos) or "",
	}
end

local function policy_unavailable(reason, modify)
	log("log_error", "qpu: %s", reason)
	if SETTINGS.fail_mode == "open" then
		log("log_info", "qpu: fail_mode=open: letting the --qpu job through; the prolog decides")
		return slurm.SUCCESS
	end
	if modify then
		return slurm.ESLURM_ACCESS_DENIED or slurm.ERROR
	end
	tell_user("--qpu jobs cannot be checked right now (" .. reason .. "); try again later or ask your administrators")
	return slurm.ERROR
end

-- The job's license list with exactly one <prefix><instance>:1 (other <prefix>* entries dropped).
function M.with_instance_license(licenses, prefix, instance)
	local out = {}
	if type(licenses) == "string" then
		for item in (licenses .. ","):gmatch("([^,]*),") do
			item = trim(item)
			if item ~= "" and item:sub(1, #prefix) ~= prefix then
				out[#out + 1] = item
			end
		end
	end
	out[#out + 1] = prefix .. instance .. ":1"
	return table.concat(out, ",")
end

-- Pair licenses (admission controller, `admission.enabled` in the config): the policy's pair_licenses maps
-- instance -> resource -> "qpu_<instance>__<backend>". Returns the pair licenses of the requested resources
-- for the mapped instance, or nil when the policy has none (admission off).
function M.pair_licenses_for(policy, instance, requested)
	local by_resource = type(policy) == "table" and type(policy.pair_licenses) == "table"
		and instance and policy.pair_licenses[instance]
	if type(by_resource) ~= "table" then
		return nil
	end
	local out, seen = {}, {}
	for _, name in ipairs(requested) do
		local lic = by_resource[name]
		if lic and not seen[lic] then
			seen[lic] = true
			out[#out + 1] = lic
		end
	end
	return out
end

-- The job's license list with exactly one <pair>:1 per pair license given (other pair licenses, names
-- "qpu_*__*", dropped: a user cannot ask for a pair that the rules did not choose).
function M.with_pair_licenses(licenses, pair_names)
	local out = {}
	if type(licenses) == "string" then
		for item in (licenses .. ","):gmatch("([^,]*),") do
			item = trim(item)
			local name = item:match("^([^:*]+)") or item
			if item ~= "" and not (name:sub(1, 4) == "qpu_" and name:find("__", 5, true)) then
				out[#out + 1] = item
			end
		end
	end
	for _, lic in ipairs(pair_names) do
		out[#out + 1] = lic .. ":1"
	end
	return table.concat(out, ",")
end

local function check(text, identity, modify, on_allowed)
	local policy, err = M.load_policy()
	if not policy then
		return policy_unavailable(err, modify)
	end
	-- job_desc does not name the cluster: the policy was rendered for this slurmctld's cluster
	if identity.cluster == nil and type(policy.cluster) == "string" then
		identity.cluster = policy.cluster
	end
	local d = M.decide(policy, identity, M.parse_request(text))
	if d.allowed then
		log("log_debug", "qpu: %s", d.message)
		if on_allowed then
			on_allowed(d, policy)
		end
		return slurm.SUCCESS
	end
	if modify then
		log("log_info", "qpu: refused job update (%s): %s", d.code, d.message)
		return slurm.ESLURM_ACCESS_DENIED or slurm.ERROR
	end
	log("log_info", "qpu: refused (%s): %s", d.code, d.message)
	tell_user(d.message)
	return slurm.ERROR
end

local function guarded(env_of, body, modify)
	local ok, text = pcall(env_of)
	if not ok then
		-- Cannot even tell whether the job asked for a QPU: never refuse a job for that.
		log("log_error", "qpu: cannot read spank_job_env: %s", tostring(text))
		return slurm.SUCCESS
	end
	if text == nil then
		return slurm.SUCCESS -- no --qpu: nothing to check
	end
	local ok2, rc = pcall(body, text)
	if ok2 then
		return rc
	end
	return policy_unavailable("internal error in job_submit.lua: " .. tostring(rc), modify)
end

function M.job_submit(job_desc, part_list, submit_uid)
	return guarded(function()
		return M.qpu_request(job_desc.spank_job_env)
	end, function(text)
		return check(text, M.submit_identity(job_desc, part_list, submit_uid), false, function(d, policy)
			local prefix = SETTINGS.instance_license
			if prefix and prefix ~= "" and d.instance then
				job_desc.licenses = M.with_instance_license(job_desc.licenses, prefix, d.instance)
			end
			local pairs_of = M.pair_licenses_for(policy, d.instance, M.parse_request(text))
			if pairs_of then
				job_desc.licenses = M.with_pair_licenses(job_desc.licenses, pairs_of)
			end
		end)
	end)
end

function M.job_modify(job_desc, job_rec, part_list, modify_uid)
	return guarded(function()
		return M.qpu_request(job_rec.spank_job_env)
	end, function(text)
		if job_desc.account == nil and job_desc.partition == nil and job_desc.qos == nil then
			return slurm.SUCCESS -- the identity the rules match on does not change
		end
		local identity = {
			user = nonempty(job_rec.user_name) or user_for_uid(job_rec.user_id),
			account = nonempty(job_desc.account) or nonempty(job_rec.account) or "",
			partition = nonempty(job_desc.partition) or nonempty(job_rec.partition) or "",
			qos = nonempty(job_desc.qos) or nonempty(job_rec.qos) or "",
		}
		return check(text, identity, true, function(d, policy)
			local current = job_desc.licenses
			if current == nil then
				current = job_rec.licenses
			end
			local wanted = current
			local prefix = SETTINGS.instance_license
			if prefix and prefix ~= "" and d.instance then
				wanted = M.with_instance_license(wanted, prefix, d.instance)
			end
			local pairs_of = M.pair_licenses_for(policy, d.instance, M.parse_request(text))
			if pairs_of then
				wanted = M.with_pair_licenses(wanted, pairs_of)
			end
			if wanted ~= current then
				job_desc.licenses = wanted
			end
		end)
	end, true)
end

qauvern_qpu = M

if not QAUVERN_QPU_LIBRARY_ONLY then
	function slurm_job_submit(job_desc, part_list, submit_uid)
		return M.job_submit(job_desc, part_list, submit_uid)
	end

	function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
		return M.job_modify(job_desc, job_rec, part_list, modify_uid)
	end
end

-- Slurm checks the value a job_submit script returns when it loads.
return slurm and slurm.SUCCESS or 0
