"""`dspx finetune`: training data from a program's traces, training the local model, the result."""
