"""Python tools for programs/agent.yaml. A tool's name, docstring and type hints are what the
agent sees: the docstring becomes its description, the hints its JSON schema."""

# Fixed rates, so the example answers the same on every machine and needs no network.
_PER_USD = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 151.0, "CHF": 0.88}


def exchange_rate(from_currency: str, to_currency: str) -> float:
    """How many units of `to_currency` one unit of `from_currency` buys. Currencies are ISO codes such as USD, EUR, GBP, JPY, CHF."""
    source, target = from_currency.strip().upper(), to_currency.strip().upper()
    for code in (source, target):
        if code not in _PER_USD:
            raise ValueError(f"unknown currency {code!r}; known: {', '.join(_PER_USD)}")
    return round(_PER_USD[target] / _PER_USD[source], 6)
