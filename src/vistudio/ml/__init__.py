"""Machine-learning libraries: tasks, models, training, export, embeddings, inference."""
