"""The console's screens, one pane each, shown one at a time in the main screen."""
