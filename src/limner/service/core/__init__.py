"""What the routes do, apart from HTTP: deployments, scoring, subscriptions, explanations."""
