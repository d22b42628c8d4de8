# Vigil API authorization for Open Policy Agent: the same decisions as the Cedar policies in cloud/policies
# (the default engine), for deployments that run OPA (config `authz.engine: "opa"`).
#
# The cloud POSTs {"input": {"principal": ..., "action": ..., "resource": ...}} to /v1/data/vigil/authz and
# reads `allow` and `reason` from the result; anything else (no result, a timeout, an error) is a deny.
#   input.principal  {"subject", "tenant", "roles": [..], "sites": [..] (only for a site-scoped user)}
#   input.action     "events:read" | "devices:read" | "devices:revoke" | "enrollment-tokens:create" |
#                    "enrollment-tokens:read" | "audit:read" | "media:read" | "media:erase" | "configs:read" |
#                    "configs:write" | "rollouts:read" | "rollouts:write" | "webhooks:read" | "webhooks:write" |
#                    "releases:read" | "releases:publish" | "retention:read" | "retention:write" |
#                    "holds:read" | "holds:write" | "erasures:read" | "erasures:write" |
#                    "exports:create"
#   input.resource   {"type", "tenant", ...} exactly as cloud/src/auth/authorize.ts (Resource) defines it:
#                    collections "events" | "devices" | "enrollment-tokens" | "configs" | "rollouts" with an
#                    optional "site";
#                    "audit-log"; "webhooks", "releases", "retention", "holds" and "privacy" (tenant-wide, never with a site); single resources "event" | "device" | "media" with "id" and, once loaded,
#                    "site" (null: a device at no site), "camera", "dataClass".
# An absent attribute of a single resource means "not loaded yet" (the cloud asks again once it is).
#
# Keep it in step with cloud/policies: cloud/test/opa.test.ts runs the shared decision table through both
# engines (against a real OPA when OPA_URL is set).
package vigil.authz

import rego.v1

default allow := false

# Default deny: at least one permit, no forbid, and an action that applies to the resource type.
allow if {
	valid_request
	count(forbids) == 0
	count(permits) > 0
}

reason := sprintf("invalid request: %s does not apply to %s", [input.action, input.resource.type]) if {
	not valid_request
} else := sprintf("forbid: %s", [concat(", ", sort(forbids))]) if {
	count(forbids) > 0
} else := sprintf("permit: %s", [concat(", ", sort(permits))]) if {
	count(permits) > 0
} else := sprintf("no policy permits %s", [input.action])

# The schema's appliesTo (cloud/policies/vigil.cedarschema).
applies_to := {
	"events:read": {"events", "event"},
	"events:review": {"event"},
	"devices:read": {"devices", "device"},
	"devices:revoke": {"device"},
	"enrollment-tokens:create": {"enrollment-tokens"},
	"enrollment-tokens:read": {"enrollment-tokens"},
	"audit:read": {"audit-log"},
	"media:read": {"media"},
	"media:erase": {"media"},
	"configs:read": {"configs", "device"},
	"configs:write": {"configs", "device"},
	"rollouts:read": {"rollouts"},
	"rollouts:write": {"rollouts"},
	"webhooks:read": {"webhooks"},
	"webhooks:write": {"webhooks"},
	"alerts:read": {"alerts"},
	"alerts:write": {"alerts"},
	"alerts:cancel": {"alerts"},
	"releases:read": {"releases"},
	"releases:publish": {"releases"},
	"retention:read": {"retention"},
	"retention:write": {"retention"},
	"holds:read": {"holds"},
	"holds:write": {"holds"},
	"erasures:read": {"privacy"},
	"erasures:write": {"privacy"},
	"exports:create": {"privacy"},
}

valid_request if input.resource.type in applies_to[input.action]

# Reading metadata: the Cedar action group "read" (media:read is not in it).
read_actions := {"events:read", "devices:read", "enrollment-tokens:read", "audit:read", "configs:read", "rollouts:read", "webhooks:read", "alerts:read", "releases:read", "retention:read", "holds:read", "erasures:read"}

collection_types := {"events", "devices", "enrollment-tokens", "configs", "rollouts"}

# ---- forbids (guards.cedar): any one denies, whatever the permits say -------------------------------------

# A user acts inside its own tenant only.
forbids contains "tenant-isolation" if not same_tenant

same_tenant if input.resource.tenant == input.principal.tenant

# A site-scoped user acts only on its sites: never tenant-wide, never on a resource at another site.
forbids contains "site-scope" if {
	site_scoped
	tenant_wide
}

forbids contains "site-scope" if {
	site_scoped
	site_known
	not site_in_scope
}

site_scoped if "sites" in object.keys(input.principal)

tenant_wide if {
	input.resource.type in collection_types
	not site_known
}

tenant_wide if input.resource.type == "audit-log"

tenant_wide if input.resource.type in {"webhooks", "releases", "retention", "holds", "privacy"}

tenant_wide if input.resource.type == "alerts"

site_known if "site" in object.keys(input.resource)

# A device at no site (null) is at site "", which is in nobody's sites.
resource_site := "" if input.resource.site == null

resource_site := input.resource.site if is_string(input.resource.site)

site_in_scope if {
	some s in input.principal.sites
	s == resource_site
}

# ---- data classes: only "metadata" is covered by the ordinary read permits --------------------------------

class_known if "dataClass" in object.keys(input.resource)

metadata_or_unknown if not class_known

metadata_or_unknown if input.resource.dataClass == "metadata"

media_or_unknown if not class_known

media_or_unknown if input.resource.dataClass == "media"

# ---- permits (admin.cedar, operator.cedar, viewer.cedar, installer.cedar, auditor.cedar) ------------------

# admin: everything in its tenant, media and personal data included.
permits contains "admin" if "admin" in input.principal.roles

# operator: reads events and devices (metadata), and media that is not personal data.
permits contains "operator-read" if {
	"operator" in input.principal.roles
	input.action in {"events:read", "devices:read", "configs:read", "rollouts:read", "alerts:read", "releases:read"}
	metadata_or_unknown
}

permits contains "operator-alerts-cancel" if {
	"operator" in input.principal.roles
	input.action == "alerts:cancel"
}

permits contains "operator-events-review" if {
	"operator" in input.principal.roles
	input.action == "events:review"
	metadata_or_unknown
}

permits contains "operator-media" if {
	"operator" in input.principal.roles
	input.action == "media:read"
	media_or_unknown
}

# viewer: reads event metadata and devices.
permits contains "viewer-read" if {
	"viewer" in input.principal.roles
	input.action in {"events:read", "devices:read", "configs:read", "rollouts:read", "releases:read"}
	metadata_or_unknown
}

# installer: enrollment tokens, and reading devices.
permits contains "installer" if {
	"installer" in input.principal.roles
	input.action in {"enrollment-tokens:create", "enrollment-tokens:read", "devices:read"}
}

# auditor: reads every kind of metadata, the audit log included.
permits contains "auditor-read" if {
	"auditor" in input.principal.roles
	input.action in read_actions
	metadata_or_unknown
}
