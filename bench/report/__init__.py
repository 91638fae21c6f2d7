"""Report: run directories -> tidy tables -> normalised scores -> rliable statistics, figures and tables; and
`bench probe` for drawing what a trained policy does. Every function takes plain arrays or tables."""
