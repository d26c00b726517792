"""The agents on users' machines: the owner's (share) and the collaborators' (join)."""
