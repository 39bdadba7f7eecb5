"""End of turn: when has the user finished speaking (model, transcript cues, policy)."""
