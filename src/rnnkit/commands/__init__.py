"""Commands that are not one application's: demo, diagnose, plot, ngram, bench;
and what every command shares."""
