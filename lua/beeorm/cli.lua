-- beeorm.cli: the operator subcommands of the `beeorm` host (consume, stats, errors).
return {}
