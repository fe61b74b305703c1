"""The clean rules, one small module per rule or per closely related group of rules."""
