# Least privilege for agents: a request is allowed only when a permission of the
# registered agent names its method and path. Everything else is denied.
# The registry (data.chaperone.registry) is also enforced by chaperone itself before this
# policy runs: unregistered, suspended and decommissioned agents never get here unless the
# configuration flags unregistered agents instead of denying them.
package chaperone.authz

# Deny by default.
default decision := {"allowed": false, "reason": "no_permission", "rule": "default_deny"}

decision := {"allowed": false, "reason": "agent_unregistered", "rule": "registry"} if {
	not data.chaperone.registry.agents[input.agent.id]
}

decision := {"allowed": true, "reason": "permitted", "rule": matched[0]} if {
	count(matched) > 0
}

# Names of the agent's permissions that cover this request, in data order.
matched := [permission.name |
	some permission in data.chaperone.registry.agents[input.agent.id].permissions
	input.attributes.request.http.method in permission.methods
	path_matches(permission.path, input.parsed_path)
]

# A pattern is a list of segments; "*" matches exactly one segment.
path_matches(pattern, segments) if {
	count(pattern) == count(segments)
	every i, part in pattern {
		segment_matches(part, segments[i])
	}
}

segment_matches("*", _) := true

segment_matches(part, segment) if part == segment
