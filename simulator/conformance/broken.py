"""placeholder"""

RULES: dict[str, str] = {}
