"""Configuration in the product: rules (with a preview over recent demands and "test on this
demand"), teams and their members, and API keys — dashboard pages for staff with the model
permissions, instead of the stock admin."""
