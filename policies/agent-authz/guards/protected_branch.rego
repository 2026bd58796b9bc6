# Guard: writing to a protected branch needs a grant that names that exact write.
#
# data.chaperone.protected_branches:
#   {"endpoints": [{"methods": ["POST"], "path": "/repos/{owner}/{repo}/branches/{branch}/commits"}],
#    "names": ["main"], "prefixes": ["release/"]}
#
# Every endpoint template has a {branch} placeholder. Branch names compare without regard
# to case (a host that folds case must not open a way around the list). A branch name with
# a slash travels percent-encoded as one segment: /branches/release%2F1.2/commits.
#
# The hold is lifted by an agent_http grant whose location is this path written out in
# full (a template with {branch} does not count), or by an active break-glass entry
# covering the request.
package chaperone.guards.protected_branch

import data.chaperone.lib.grants
import data.chaperone.lib.paths

hold(request, presented) := {
	"rule": "guard.protected_branch",
	"denied": "protected_branch_requires_grant",
	"approved": "protected_branch_granted",
	"grants": array.slice(grants.naming(presented, request), 0, 1),
	"break_glass": true,
} if {
	some endpoint in data.chaperone.protected_branches.endpoints
	request.method in endpoint.methods
	branch := paths.params(endpoint.path, request.segments).branch
	protected(branch)
}

protected(branch) if {
	some name in data.chaperone.protected_branches.names
	lower(branch) == lower(name)
}

protected(branch) if {
	some prefix in data.chaperone.protected_branches.prefixes
	startswith(lower(branch), lower(prefix))
}
