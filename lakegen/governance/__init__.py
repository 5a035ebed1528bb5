"""Governance: policies and licences (:mod:`.policies`), what a pull request changes (:mod:`.changes`,
:mod:`.filechanges`), immutable releases (:mod:`.releases`), the audit trail from git (:mod:`.history`),
CODEOWNERS (:mod:`.codeowners`) and readable changes (:mod:`.changetext`, :mod:`.versiondiff`).
"""
