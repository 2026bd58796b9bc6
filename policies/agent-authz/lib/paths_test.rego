package chaperone.lib.paths_test

import data.chaperone.lib.paths

test_literal_template_matches_only_itself if {
	paths.matches("/tickets", ["tickets"])
	not paths.matches("/tickets", ["tickets", "42"])
	not paths.matches("/tickets", ["Tickets"])
	not paths.matches("/tickets", [])
}

test_placeholder_matches_exactly_one_segment if {
	paths.matches("/tickets/{id}", ["tickets", "42"])
	not paths.matches("/tickets/{id}", ["tickets"])
	not paths.matches("/tickets/{id}", ["tickets", "42", "attachments"])
	paths.matches("/tickets/{id}/comments", ["tickets", "42", "comments"])
	not paths.matches("/tickets/{id}/comments", ["tickets", "42", "notes"])
}

test_placeholder_takes_a_decoded_slash_as_one_segment if {
	# chaperone decoded "release%2F1.2" into one segment.
	paths.matches("/branches/{branch}", ["branches", "release/1.2"])
}

test_paths_with_dot_segments_match_nothing if {
	not paths.matches("/a/./b", ["a", ".", "b"])
	not paths.matches("/", ["."])
	not paths.matches("/tickets/{id}/comments", ["tickets", "..", "comments"])
	not paths.matches("/tickets/{id}", ["tickets", "."])
	not paths.matches("/files/{path...}", ["files", "a", "..", "b"])
}

test_rest_matches_one_or_more_segments if {
	paths.matches("/files/{path...}", ["files", "a"])
	paths.matches("/files/{path...}", ["files", "a", "b", "c"])
	not paths.matches("/files/{path...}", ["files"])
	not paths.matches("/files/{path...}", ["other", "a"])
}

test_root_template if {
	paths.matches("/", [])
	not paths.matches("/", ["x"])
}

test_non_canonical_templates_match_nothing if {
	not paths.matches("/tickets//{id}", ["tickets", "7"])
	not paths.matches("/tickets/{id}/", ["tickets", "7"])
	not paths.matches("", [])
	not paths.valid("/tickets//{id}")
	not paths.valid("/tickets/")
}

test_templates_without_leading_slash_or_with_a_brace_inside_a_segment_match_nothing if {
	not paths.matches("tickets/{id}", ["tickets", "1"])
	not paths.matches("tickets", ["tickets"])
	not paths.matches("/tickets/x{id}", ["tickets", "x1"])
}

test_repeated_names_match_but_give_no_params if {
	paths.matches("/a/{id}/b/{id}", ["a", "1", "b", "2"])
	not paths.params("/a/{id}/b/{id}", ["a", "1", "b", "2"])
}

test_literal_dot_segments_are_not_valid if {
	not paths.valid("/a/../b")
	not paths.valid("/a/./b")
}

test_valid if {
	paths.valid("/")
	paths.valid("/tickets/{id}/comments")
	paths.valid("/files/{path...}")
	not paths.valid("/files/{path...}/x")
	not paths.valid("files")
	not paths.valid("/a/{id}/b/{id}")
	not paths.valid("/a/{i d}")
}

test_exact if {
	paths.exact("/repos/acme/shop/branches/main/commits")
	not paths.exact("/repos/{owner}/shop")
	not paths.exact("/files/{path...}")
}

test_params if {
	paths.params("/repos/{owner}/{repo}/branches/{branch}/commits", ["repos", "acme", "shop", "branches", "main", "commits"]) == {"owner": "acme", "repo": "shop", "branch": "main"}
	paths.params("/files/{path...}", ["files", "a", "b"]) == {"path": "a/b"}
	paths.params("/tickets", ["tickets"]) == {}
	not paths.params("/tickets/{id}", ["tickets"])
}
