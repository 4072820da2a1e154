"""What each job kind takes and reports: params models, field docs, typed report models."""
