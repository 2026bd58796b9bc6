# Permissions: what an agent may do, as data.
#
#   {"name": "tickets.read", "methods": ["GET"], "path": "/tickets/{id}",
#    "purposes": ["support"]}
#
# "methods" are compared exactly (upper case, as HTTP sends them); "path" is a template
# (chaperone.lib.paths); "purposes", when present and not empty, lists the purposes
# (input.agent.purpose) the permission serves: a request without a purpose gets none.
#
# Functions take the request as chaperone.authz builds it:
#   {"agent": id, "method": "GET", "segments": input.parsed_path, "purpose": p|null, ...}
package chaperone.lib.permissions

import data.chaperone.lib.paths

# Method and path match, whatever the purpose.
targets(permission, request) if {
	request.method in permission.methods
	paths.matches(permission.path, request.segments)
}

# Without "purposes" the default list holds the request's own purpose, so it passes.
serves(permission, purpose) if purpose in object.get(permission, "purposes", [purpose])

serves(permission, _) if permission.purposes == []

covers(permission, request) if {
	targets(permission, request)
	serves(permission, request.purpose)
}

# Well-formed, for the data checks in chaperone.lint.
valid(permission) if {
	is_string(permission.name)
	permission.name != ""
	is_array(permission.methods)
	count(permission.methods) > 0
	every method in permission.methods {
		is_string(method)
		method != ""
		method == upper(method)
	}
	paths.valid(permission.path)
	valid_purposes(object.get(permission, "purposes", []))
}

valid_purposes(purposes) if {
	is_array(purposes)
	every purpose in purposes {
		is_string(purpose)
	}
}
