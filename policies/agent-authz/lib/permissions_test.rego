package chaperone.lib.permissions_test

import data.chaperone.lib.permissions

read := {"name": "tickets.read", "methods": ["GET"], "path": "/tickets/{id}"}

comment := {"name": "tickets.comment", "methods": ["POST"], "path": "/tickets/{id}/comments", "purposes": ["support"]}

req(method, segments, purpose) := {"agent": "a", "method": method, "segments": segments, "purpose": purpose}

test_method_and_path_must_both_match if {
	permissions.covers(read, req("GET", ["tickets", "1"], null))
	not permissions.covers(read, req("DELETE", ["tickets", "1"], null))
	not permissions.covers(read, req("get", ["tickets", "1"], null))
	not permissions.covers(read, req("GET", ["tickets", "1", "comments"], null))
	not permissions.covers(read, req("GET", ["users", "1"], null))
}

test_permission_without_purposes_serves_any_purpose if {
	permissions.covers(read, req("GET", ["tickets", "1"], "billing"))
	permissions.covers(object.union(read, {"purposes": []}), req("GET", ["tickets", "1"], null))
}

test_permission_with_purposes_needs_one_of_them if {
	permissions.covers(comment, req("POST", ["tickets", "1", "comments"], "support"))
	not permissions.covers(comment, req("POST", ["tickets", "1", "comments"], "marketing"))
	not permissions.covers(comment, req("POST", ["tickets", "1", "comments"], null))
	permissions.targets(comment, req("POST", ["tickets", "1", "comments"], null))
}

test_valid if {
	permissions.valid(read)
	permissions.valid(comment)
	not permissions.valid(object.remove(read, ["name"]))
	not permissions.valid(object.union(read, {"methods": []}))
	not permissions.valid(object.union(read, {"methods": ["get"]}))
	not permissions.valid(object.union(read, {"methods": "GET"}))
	not permissions.valid(object.union(read, {"path": "tickets/{id}"}))
	not permissions.valid(object.union(read, {"purposes": "support"}))
}
