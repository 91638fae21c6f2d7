"""Plan: from what the user asked for (a sweep spec or grid flags, override files, -o, protocol flags) to an
ordered list of override layers and from them to JobSpecs. Nothing here writes a run directory."""
